client.startup({ clientUrl: "pocprotocol://" })
