client.callbackToVisitor({
visitorName: 'XXXX',
startVideo: true,
inviteSuccess: function (data) {
console.log(data, '外呼-访客邀请发送成功')
},
acceptSuccess: function (data) {
console.log('外呼-访客接受邀请', data)
},
visitorRefuse: function (data) {
console.log('外呼-访客拒接邀请', data)
},
visitorDisconnect: function (data) {
console.log('外呼-访客挂断', data)
},
videoBusyMark: function (data) {
console.log('外呼-访客忙线', data)
},
timeoutDisconnect: function (data) {
console.log('外呼-访客超时未接听', data)
},
kefuCloseVideoSuccess: function(data) {
console.log('客服挂断音视频', data)
},
error: function (error) {
console.log('外呼-访客 出错', error)
/*error: {
code: "SDK_11",
msg: "当前访客正在进行会话,无法外呼"
}
error: {
code: "SDK_08",
msg: "查询id出错,请检查访客信息是否正确"
}*/
}
});
