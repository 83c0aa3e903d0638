"""Personalised product-search models (HEM, QEM, AEM, ZAM, HRNN-search) and what they share."""
