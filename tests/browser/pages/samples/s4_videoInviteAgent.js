client.videoInviteAgent({
agentName: 'XXXX',
inviteSuccess: function (data) {
console.log('三方坐席视频邀请发送成功', data);
},
acceptSuccess: function (data) {
console.log('三方坐席接受视频成功', data)
},
exitSuccess: function (data) {
console.log('三方坐席退出成功', data)
},
kefuCloseVideoSuccess: function(data) {
console.log('客服挂断音视频', data)
},
error: function(data) {
console.log(data, '邀请坐席失败')
}
})
