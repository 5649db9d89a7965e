client.startLogin({
minimize: true,
data: {
url: "https://pingan-test-video.easemob.com/doLogin?name=23160006&pwd=76160006&returnTo=",
},
success: function (data) {
console.log(data, "登录成功回调");
},
error: function (err) {
// 登录超时逻辑处理
if (err && err.code == -1) {
// 此时登录超时
console.log("登录超时")
}
}
})
