client.sessionState({
success: function(data) {
console.log(data)
}
})
