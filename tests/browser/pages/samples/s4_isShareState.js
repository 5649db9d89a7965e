client.isShareState({
success: function(data) {
console.log(data.data, '当前是否在共享中')
}
})
