"""Replicated tiers on the engines that run them: Redis Sentinel, Patroni.

memops never decides a failover itself: it asks the engine who leads, and asks it to
switch over.
"""
