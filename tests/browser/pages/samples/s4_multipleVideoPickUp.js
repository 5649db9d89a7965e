client.multipleVideoPickUp({
acceptSuccess: function (data) {
console.log('三方坐席接受当前视频成功', data);
},
exitSuccess: function (data) {
console.log('三方坐席离开当前视频成功', data);
},
kefuCloseVideoSuccess: function(data) {
console.log('客服挂断音视频', data)
},
error: function(error) {
console.log('三方坐席加入音视频出错', error)
}
});
