client.isMultipleVideo({
success: function(data) {
console.log(data.data, '当前是否正在三方视频中')
}
})
