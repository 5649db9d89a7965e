client.sessionCount({
success: function(data) {
console.log(data.payload.sessionCount)
}
})
