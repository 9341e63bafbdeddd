from tests.facility.fakeplant import package

build, start_simulator = package("power")
