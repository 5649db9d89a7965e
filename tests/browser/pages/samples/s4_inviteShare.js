client.inviteShare({
open: function (data) {
console.log('共享屏幕邀请成功', data)
},
close: function (data) {
console.log('访客共享屏幕关闭了', data)
},
error: function (error) {
console.log('邀请访客共享屏幕失败')
}
});
