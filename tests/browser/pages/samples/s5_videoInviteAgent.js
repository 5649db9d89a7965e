client.videoInviteAgent({
agentName: 'XXXX'
},function(state, payload){
if (state = 006006){
console.log('邀请三方访客-访客拒接邀请')
} else if (state = 006007){
console.log('邀请三方访客-访客忙线')
} else if (state = 006008){
console.log('邀请三方访客-访客超时')
} else if (state = 006009){
console.log('邀请三方访客-访客错误')
} else if (state = 0060010){
console.log('邀请三方访客-访客挂断')
} else if (state = 007002){
console.log('邀请三方访客-邀请发送成功')
} else if (state = 008002){
console.log('邀请三方访客-访客接受视频成功')
} else if (state = 005002){
console.log('邀请三方访客-主坐席挂断')
}
});
