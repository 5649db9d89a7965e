client.setWindowSize({
width: "300",
height: "400"
});
