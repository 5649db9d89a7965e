client.videoPickUp({
session_id: serviceSessionId,
}, function(state, payload){
if (state = 001001){
console.log('访客邀请-访客超时未接听')
} else if (state = 002011){
console.log('访客邀请-错误')
} else if (state = 006013){
console.log('访客邀请-成功')
} else if (state = 005007){
console.log('访客邀请-访客挂断(接通后)')
} else if (state = 005008){
console.log('访客邀请-坐席挂断(接通后)')
}
});
