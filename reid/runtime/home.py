"""The state home (:func:`settingskit.home.reid_home`), where re-id code has always found it."""

from settingskit.home import reid_home

__all__ = ["reid_home"]
