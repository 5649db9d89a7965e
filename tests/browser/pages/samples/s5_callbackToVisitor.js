client.callbackToVisitor({
visitorName: 'XXXX',
startVideo: true,
},function(state, payload){
if (state = 002001){
console.log('外呼访客-访客拒接邀请')
} else if (state = 002002){
console.log('外呼访客-访客超时')
} else if (state = 002003){
console.log('外呼访客-访客忙线')
} else if (state = 002004){
console.log('外呼访客-访客错误')
} else if (state = 002005){
console.log('外呼访客-坐席挂断(未接通)')
} else if (state = 003001){
console.log('外呼访客-邀请发送成功')
} else if (state = 006011){
console.log('外呼访客-访客接受视频成功')
} else if (state = 005003){
console.log('外呼访客-访客挂断')
} else if (state = 005004){
console.log('外呼访客-坐席挂断(已接通)')
}
}
});
