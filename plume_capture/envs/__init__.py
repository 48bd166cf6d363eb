"""Gymnasium environments on the capture engine's kernels: ``PlumeNav-v0`` and a VectorEnv."""
from plume_capture.envs.plume_nav import PlumeNavEnv
from plume_capture.envs.vector import PlumeNavVectorEnv

ENV_ID = "PlumeNav-v0"


def register_envs() -> None:
    import gymnasium

    if ENV_ID not in gymnasium.registry:
        gymnasium.register(ENV_ID, entry_point="plume_capture.envs.plume_nav:PlumeNavEnv",
                           vector_entry_point="plume_capture.envs.vector:PlumeNavVectorEnv")


register_envs()

__all__ = ["ENV_ID", "PlumeNavEnv", "PlumeNavVectorEnv", "register_envs"]
