client.videoInviteCurrentVisitor({
inviteSuccess: function (data) {
console.log(data, '邀请当前-访客邀请发送成功')
},
acceptSuccess: function (data) {
console.log('邀请当前-访客接受邀请', data)
},
visitorRefuse: function (data) {
console.log('邀请当前-访客拒接邀请', data)
},
visitorDisconnect: function (data) {
console.log('邀请当前-访客挂断', data)
},
videoBusyMark: function (data) {
console.log('邀请当前-访客忙线', data)
},
timeoutDisconnect: function (data) {
console.log('邀请当前-访客超时未接听', data)
},
kefuCloseVideoSuccess: function(data) {
console.log('客服挂断音视频', data)
},
error: function (data) {
console.log('邀请当前-访客 出错', data)
}
});
