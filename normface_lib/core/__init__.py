"""Foundations every room stands on: exceptions (:mod:`.errors`), input checks (:mod:`.checks`), files, caches and
downloads (:mod:`.resources`), seeding and devices (:mod:`.runtime`), and where a result came from
(:mod:`.provenance`). Nothing here knows about faces or models."""
