"""A small subscription-billing service: renew a customer's plan and issue the invoice."""
