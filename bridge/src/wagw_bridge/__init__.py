"""wagw_bridge: Meta WhatsApp webhook bridge of wa-voip-gateway."""

__version__ = "0.1.0"
