client.videoInviteVisitor({
visitorName: 'XXXX',
},function(state, payload){
if (state = 006001){
console.log('邀请三方访客-访客拒接邀请')
} else if (state = 006002){
console.log('邀请三方访客-访客忙线')
} else if (state = 006003){
console.log('邀请三方访客-访客超时')
} else if (state = 006004){
console.log('邀请三方访客-访客错误')
} else if (state = 006005){
console.log('邀请三方访客-访客挂断')
} else if (state = 007001){
console.log('邀请三方访客-邀请发送成功')
} else if (state = 008001){
console.log('邀请三方访客-访客接受视频成功')
} else if (state = 005001){
console.log('邀请三方访客-主坐席挂断')
}
});
