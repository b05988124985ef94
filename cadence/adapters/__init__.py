"""Channels out: sandboxed template rendering and the provider adapters the engine sends through.

The engine renders a `CompiledTemplate` for one contact with `cadence.adapters.render`, wraps
the result in an `OutboundMessage` (`cadence.adapters.message`) and hands it to a
`ChannelAdapter` (SMTP, Brevo, Infobip SMS/WhatsApp, webhook); every adapter answers with a
`SendResult` saying sent, failed for good, retry later (at a time) or unknown.
"""
