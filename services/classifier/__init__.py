"""classifier: feedback.received in, feedback.classified out.

``app`` wires the service, ``handlers`` take each consumed event, ``domain`` decides (root
cause, urgency, sentiment, reasons), ``model`` is the trained artifact, ``policy`` the
taxonomy file, ``metrics`` and ``settings`` what their names say. ``offline/`` holds the
tools that build and measure the model; the service never imports it."""
