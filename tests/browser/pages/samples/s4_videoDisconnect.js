client.videoDisconnect()
