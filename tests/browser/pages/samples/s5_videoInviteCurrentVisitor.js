client.videoInviteCurrentVisitor(null, function(state, payload){
if (state = 002006){
console.log('外呼当前访客-访客拒接邀请')
} else if (state = 002007){
console.log('外呼当前访客-访客超时')
} else if (state = 002008){
console.log('外呼当前访客-访客忙线')
} else if (state = 002009){
console.log('外呼当前访客-访客错误')
} else if (state = 0020010){
console.log('外呼当前访客-坐席挂断(未接通)')
} else if (state = 003002){
console.log('外呼当前访客-邀请发送成功')
} else if (state = 006012){
console.log('外呼当前访客-访客接受视频成功')
} else if (state = 005005){
console.log('外呼当前访客-访客挂断')
} else if (state = 005006){
console.log('外呼当前访客-坐席挂断(已接通)')
}
});
