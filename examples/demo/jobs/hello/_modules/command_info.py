import os

print(f"hello runs on {os.environ.get('ALLOCATION_IP', '?')}")
