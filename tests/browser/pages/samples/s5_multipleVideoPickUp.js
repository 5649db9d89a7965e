client.multipleVideoPickUp(null, function(state, payload){
if (state = 001002){
console.log('坐席邀请-访客超时未接听')
} else if (state = 002011){
console.log('坐席邀请-错误')
}else if (state = 006014){
console.log('坐席邀请邀请-成功')
} else if (state = 005009){
console.log('坐席邀请-访客挂断(接通后)')
} else if (state = 005010){
console.log('坐席邀请-坐席挂断(接通后)')
}
});
