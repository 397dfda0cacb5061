"""psbridge.remote"""
