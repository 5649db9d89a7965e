client.snapshot({
success: function (data) {
console.log(data, '截图数据')
},
error: function(error) {
console.log(error, '截图失败')
}
});
