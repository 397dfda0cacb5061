"""psbridge.crm"""
