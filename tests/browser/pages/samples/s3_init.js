window.onload = function() {
var client;
function initIMClient(){
var HXPlugin = window.HXPlugin = 0;
var wssrc = location.protocol == "https:" ? "wss://lccp-ex.easemob.com:1040" : "ws://127.0.0.1:1040";
client = new IMClient({
baseWsUrl: wssrc,
videoBarVisible: true,
ssoTo: "https://kefu.wecvideotest.pingan.com.cn/mo/agent/webapp/chat",
success: function(data){
console.log("成功连接", data);
HXPlugin = 0;
this.linkStatus = true;
},
error: function(error){
this.linkStatus = false;
this.ready = false;
console.log(error);
HXPlugin = 0;
},
ssoReady: function(){
console.log("进入单点登录页面了,可以登录了 123+");
},
kefuReady: function(){
console.log("进入客服系统了,可以退出了 123-");
},
kefuWSClose: function(){
console.log("kefu系统的ws断开");
}
});
client.linkStatus = false;
client.ready = false;
client.detactExeReadyInterval = null;
/**
* 接收exe内部操作的回调
*/
client.initInnerCallBack({
chatCloseCB: function(data){
console.log(data);
},
visitorStreamOffline: function(data){
console.log(data)
}
});
return client;
}
window.initIMClient = initIMClient;
}
