"""psbridge.cloud"""
