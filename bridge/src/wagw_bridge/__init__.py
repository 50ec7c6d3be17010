"""wagw_bridge: Meta WhatsApp webhook bridge of wa-pstn-gateway."""

__version__ = "0.1.0"
