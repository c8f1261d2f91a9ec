"""A tiny service used by the Mobius example pipeline."""


def greet(name: str) -> str:
    return f"hello, {name}"


if __name__ == "__main__":
    print(greet("mobius"))
