"""The lab: the report that answers every manipulation of the lab in one HTML page.

Owns the report's protocol, its measurements (numbers only), its figures
(drawing only: each takes numbers or arrays and returns a picture), and the
page, rendered from one set of templates per language.
"""
