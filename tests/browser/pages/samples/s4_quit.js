client.quit()
