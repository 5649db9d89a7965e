client.minimize()
