"""The aggregator's public site: releases as web pages (Dutch and English), CSV, JSON and a
DCAT-AP catalogue, with no login and no external assets."""
