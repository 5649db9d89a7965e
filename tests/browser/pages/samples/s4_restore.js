client.restore()
