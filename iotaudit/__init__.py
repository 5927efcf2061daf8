"""iotaudit: can your AWS IoT fleet authenticate AWS IoT Core, today and on every date ahead?"""

__version__ = "0.1.0"
