"""Local stand-ins for the gateways, speaking their wire protocols over real sockets."""

import importlib

from config.env import env_int

# name: (module, class, port environment variable, default port)
SIMULATORS = {
    "pulse": ("providers.simulators.pulse", "PulseSimulator", "SIM_PULSE_PORT", 8101),
    "cascade_gateway": (
        "providers.simulators.cascade_gateway",
        "CascadeGatewaySimulator",
        "SIM_CASCADE_GATEWAY_PORT",
        8102,
    ),
    "bsg": ("providers.simulators.bsg", "BsgSimulator", "SIM_BSG_PORT", 8103),
    "smtp": ("providers.simulators.smtp", "SmtpSimulator", "SIM_SMTP_PORT", 8125),
}


def simulator_port(name: str) -> int:
    _module, _cls, variable, default = SIMULATORS[name]
    return env_int(variable, default, minimum=1)


def simulator_class(name: str):
    module, cls, _variable, _default = SIMULATORS[name]
    return getattr(importlib.import_module(module), cls)
