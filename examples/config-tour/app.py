"""A small report that reads its settings from config.yml instead of hard-coding them."""

from conveyor import config

settings = config.get()
print(f"[{settings.active}] forecast from {settings['forecast_url']}")
print(f"[{settings.active}] regions: {', '.join(settings['regions'])}")
print(f"[{settings.active}] warehouse: {settings['warehouse']['host']}")
if config.is_active("prod"):
    print("[prod] debug output off")
elif config.get("debug", default=False):
    print(f"[{settings.active}] debug output on")
