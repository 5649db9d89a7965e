"""kefu (客服): a video customer-service system — server, plugin, SDK, visitor."""

__version__ = "0.1.0"
