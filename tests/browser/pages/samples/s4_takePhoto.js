client.takePhoto({
success: function (data) {
console.log(data, '拍照数据')
},
error: function(error) {
console.log(error, '拍照失败')
// 拍照不可用会返回如下消息 {"mark":"takePhoto","subMark":"error","error":{"type":"snapShotDisabled","msg":"snapShotDisabled"}}
}
});
