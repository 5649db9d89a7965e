client.videoPickUp({
session_id: serviceSessionId,
success: function (data) {
console.log('video接起成功', data);
},
timeoutDisconnect: function(data) {
console.log('访客超时未接听', data)
},
visitorDisconnect: function(data) {
console.log('音视频接通后访客端引起的挂断', data)
},
kefuCloseVideoSuccess: function(data) {
console.log('客服挂断音视频', data)
},
error: function(error) {
console.log(error, 'videoPickUp err')
}
});
