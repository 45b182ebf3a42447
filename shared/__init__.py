"""Code every CreatorFlow service uses: event contract, money, settings, infrastructure."""
