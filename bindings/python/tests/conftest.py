"""Shared fixtures: every test segment has a name unique to this process
and test (pid, a counter and a random part), and is unlinked in teardown,
so that parallel runs never collide and nothing is left in /dev/shm."""

import itertools
import os

import pytest

import shmkv

_counter = itertools.count()


def unique_name(tag="t"):
    return "pytest-shmkv-%s-%d-%d-%s" % (tag, os.getpid(), next(_counter), os.urandom(3).hex())


@pytest.fixture
def segment():
    """A fresh segment name; whatever was created under it is removed."""
    name = unique_name()
    yield name
    shmkv.unlink(name)


@pytest.fixture
def cache(segment):
    """A new 4 MiB segment, opened read-write."""
    with shmkv.Cache(segment, memory="4M", exclusive=True) as c:
        yield c
