client.chatClose()
