"""Destinations: one ``Store`` implementation per backend (see ``base``)."""

from mirror.storage.base import NotFoundInStoreError, ObjectInfo, PutOptions, Store

__all__ = ["NotFoundInStoreError", "ObjectInfo", "PutOptions", "Store"]
