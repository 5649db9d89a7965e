client.pickUpSession({
session_id: serviceSessionId,
success: function (data) {
console.log("IM接起成功!", data);
},
error: function (data) {
console.log("IM接起失败!", data);
}
});
