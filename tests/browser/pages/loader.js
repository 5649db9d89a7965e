/* Loads imclient.js from the test's plugin (http://127.0.0.1:<port>/imclient.js), as a
 * workstation page loads it from the plugin on the agent's machine. */
document.write('<script src="' + window.KEFU_TEST.imclientUrl + '"><\/script>');
