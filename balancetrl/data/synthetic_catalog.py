"""The tool catalogue behind the synthetic function-calling data (balancetrl.data.synthetic).

Each `ToolSpec` pairs a JSON-schema tool with what is needed to write a user query whose
correct call is known: slot pools for every parameter, query templates that mention every
required argument, one sentence per optional parameter (used only when that argument is in
the call, so the reference is always derivable from the query), and for some tools a fake
result + final answer for multi-turn records.  Schemas are kept terse on purpose: up to four
of them go into a prompt that must stay under ~512 SmolLM2 tokens.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable

Pool = list | Callable[[random.Random], Any]

CITIES = ["Paris", "Tokyo", "London", "New York", "Berlin", "Madrid", "Rome", "Sydney", "Toronto",
          "Cairo", "Mumbai", "Seoul", "Lisbon", "Oslo", "Nairobi", "Lima", "Chicago", "Vienna"]
AIRPORTS = ["JFK", "LHR", "CDG", "HND", "SFO", "FRA", "AMS", "DXB", "SIN", "SYD", "YYZ", "MAD"]
CURRENCIES = ["USD", "EUR", "GBP", "JPY", "CAD", "AUD", "CHF", "INR", "CNY", "MXN"]
LANGUAGES = ["French", "Spanish", "German", "Italian", "Japanese", "Portuguese", "Korean", "Dutch"]
PHRASES = ["good morning", "where is the train station", "thank you very much", "how much does this cost",
           "I would like a coffee", "see you tomorrow", "the museum opens at nine"]
TICKERS = ["AAPL", "MSFT", "GOOGL", "AMZN", "TSLA", "NVDA", "META", "IBM", "NFLX", "INTC"]
PEOPLE = ["alice", "bob", "carla", "david", "emma", "farid", "grace", "hiro", "ines", "jonas"]
INGREDIENTS = ["chicken", "tofu", "lentils", "salmon", "mushrooms", "spinach", "chickpeas", "eggplant"]
CUISINES = ["italian", "mexican", "indian", "japanese", "thai", "french"]
FOODS = ["banana", "rice", "almonds", "broccoli", "oatmeal", "cheddar cheese", "avocado"]
TOPICS = ["technology", "sports", "business", "science", "health", "politics"]
MOVIES = ["Dune Part Two", "Inside Out 2", "The Wild Robot", "Wicked", "Gladiator II"]
ARTISTS = ["Miles Davis", "Adele", "Queen", "Taylor Swift", "Daft Punk", "Nina Simone"]
WORDS = ["serendipity", "ephemeral", "ubiquitous", "quixotic", "laconic", "mellifluous"]
SUBJECTS = ["Project update", "Lunch on Friday", "Quarterly report", "Meeting notes", "Travel plans"]
BODIES = ["The draft is ready for review.", "Can we move it to 1pm?", "Numbers look good this quarter.",
          "See the attached notes.", "I land at 6pm."]
TITLES = ["Team sync", "Dentist appointment", "Budget review", "Call with Sam", "Yoga class"]
UNIT_PAIRS = [("km", "miles"), ("miles", "km"), ("kg", "lb"), ("lb", "kg"), ("m", "ft"), ("ft", "m"),
              ("celsius", "fahrenheit"), ("liters", "gallons")]
MEASURES = ["mean", "median", "max", "min", "sum"]
EXPRESSIONS = ["12 * (3 + 4)", "2 ** 10 - 24", "(45 + 55) / 4", "17 % 5", "3.5 * 8 + 1", "sqrt(144) + 7"]


def date(rng: random.Random) -> str:
    return f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def clock(rng: random.Random) -> str:
    return f"{rng.choice([8, 9, 10, 11, 13, 14, 15, 16, 17]):02d}:{rng.choice(['00', '15', '30', '45'])}"


def ints(lo: int, hi: int) -> Callable[[random.Random], int]:
    return lambda rng: rng.randint(lo, hi)


def money(lo: int, hi: int) -> Callable[[random.Random], float]:
    # Two decimals half the time, so "number" params carry both int-like and fractional values.
    return lambda rng: rng.randint(lo, hi) if rng.random() < 0.5 else round(rng.uniform(lo, hi), 2)


def numbers(rng: random.Random) -> list[int]:
    return [rng.randint(1, 99) for _ in range(rng.randint(3, 6))]


def emails(rng: random.Random) -> list[str]:
    return [f"{p}@example.com" for p in rng.sample(PEOPLE, rng.randint(1, 3))]


def _d(schema: dict, desc: str) -> dict:
    # Descriptions only where they add a format or range: every token of a schema is paid
    # in every prompt that offers the tool, and prompts must stay under ~512 tokens.
    return {**schema, "description": desc} if desc else schema


def S(desc: str = "") -> dict:
    return _d({"type": "string"}, desc)


def I(desc: str = "") -> dict:
    return _d({"type": "integer"}, desc)


def N(desc: str = "") -> dict:
    return _d({"type": "number"}, desc)


def B(desc: str = "") -> dict:
    return _d({"type": "boolean"}, desc)


def E(values: list, desc: str = "") -> dict:
    return _d({"type": "string", "enum": list(values)}, desc)


def A(item: str, desc: str = "") -> dict:
    return _d({"type": "array", "items": {"type": item}}, desc)


@dataclass(eq=False)  # identity semantics: specs are used as dict keys and set members
class ToolSpec:
    name: str
    description: str
    params: dict[str, dict]
    required: list[str]
    slots: dict[str, Pool]
    queries: list[str]  # format fields: the required params
    optional: dict[str, list[str]] = field(default_factory=dict)  # optional param -> sentences
    intent: str = ""  # "to ..." phrase, formatted with the args; used in CoT and refusals
    result: Callable[[dict, random.Random], dict] | None = None  # multi-turn tool output
    answer: str = ""  # final answer template: args + result fields

    def schema(self) -> dict:
        return {"type": "function", "function": {
            "name": self.name, "description": self.description,
            "parameters": {"type": "object", "properties": self.params, "required": list(self.required)}}}


def _t(**kw) -> ToolSpec:
    return ToolSpec(**kw)


TOOLS: list[ToolSpec] = [
    _t(name="get_weather", description="Get the current weather in a city.",
       params={"city": S(), "unit": E(["celsius", "fahrenheit"])},
       required=["city"], slots={"city": CITIES, "unit": ["celsius", "fahrenheit"]},
       queries=["What's the weather like in {city} right now?", "How is the weather in {city} today?",
                "Tell me the current weather in {city}."],
       optional={"unit": ["Give the temperature in {unit}.", "Use {unit}, please."]},
       intent="check the current weather in {city}",
       result=lambda a, r: {"temperature": r.randint(-5, 35), "conditions": r.choice(["sunny", "cloudy", "rainy"])},
       answer="It is currently {temperature} degrees and {conditions} in {city}."),
    _t(name="get_forecast", description="Get a multi-day weather forecast for a city.",
       params={"city": S(), "days": I("1-7")},
       required=["city", "days"], slots={"city": CITIES, "days": ints(2, 7)},
       queries=["What's the {days}-day forecast for {city}?", "Give me the weather forecast for {city} for the next {days} days."],
       intent="get a {days}-day forecast for {city}"),
    _t(name="convert_currency", description="Convert an amount of money between currencies.",
       params={"amount": N(), "from_currency": S("ISO code, e.g. USD"), "to_currency": S("ISO code")},
       required=["amount", "from_currency", "to_currency"],
       slots={"amount": money(5, 5000), "from_currency": CURRENCIES, "to_currency": CURRENCIES},
       queries=["How much is {amount} {from_currency} in {to_currency}?", "Convert {amount} {from_currency} to {to_currency}.",
                "I have {amount} {from_currency}; what is that in {to_currency}?"],
       intent="convert {amount} {from_currency} to {to_currency}",
       result=lambda a, r: {"converted": round(float(a["amount"]) * r.uniform(0.5, 1.6), 2)},
       answer="{amount} {from_currency} is about {converted} {to_currency}."),
    _t(name="get_exchange_rate", description="Get the exchange rate between two currencies.",
       params={"base": S(), "target": S()},
       required=["base", "target"], slots={"base": CURRENCIES, "target": CURRENCIES},
       queries=["What is the exchange rate from {base} to {target}?", "How many {target} do I get for one {base}?"],
       intent="look up the {base} to {target} exchange rate"),
    _t(name="search_flights", description="Search flights between two airports on a date.",
       params={"origin": S("IATA code"), "destination": S("IATA code"), "date": S("YYYY-MM-DD"),
               "nonstop": B(), "max_price": I("USD")},
       required=["origin", "destination", "date"],
       slots={"origin": AIRPORTS, "destination": AIRPORTS, "date": date, "nonstop": [True], "max_price": ints(150, 1500)},
       queries=["Find flights from {origin} to {destination} on {date}.", "Are there flights {origin} to {destination} on {date}?"],
       optional={"nonstop": ["Nonstop only."], "max_price": ["My budget is {max_price} dollars at most."]},
       intent="find flights from {origin} to {destination} on {date}",
       result=lambda a, r: {"flights": r.randint(1, 9), "cheapest": r.randint(120, 900)},
       answer="I found {flights} flights from {origin} to {destination} on {date}; the cheapest costs ${cheapest}."),
    _t(name="book_hotel", description="Book a hotel room.",
       params={"city": S(), "check_in": S("YYYY-MM-DD"), "nights": I(), "guests": I()},
       required=["city", "check_in", "nights"],
       slots={"city": CITIES, "check_in": date, "nights": ints(1, 10), "guests": ints(2, 4)},
       queries=["Book a hotel in {city} from {check_in} for {nights} nights.", "I need a room in {city}, checking in {check_in}, {nights} nights."],
       optional={"guests": ["It is for {guests} guests."]},
       intent="book a hotel in {city}"),
    _t(name="convert_units", description="Convert a value between measurement units.",
       params={"value": N(), "from_unit": E(sorted({u for p in UNIT_PAIRS for u in p})),
               "to_unit": E(sorted({u for p in UNIT_PAIRS for u in p}))},
       required=["value", "from_unit", "to_unit"], slots={"value": money(1, 500), "from_unit": [], "to_unit": []},
       queries=["Convert {value} {from_unit} to {to_unit}.", "How many {to_unit} is {value} {from_unit}?"],
       intent="convert {value} {from_unit} to {to_unit}",
       result=lambda a, r: {"result": round(float(a["value"]) * r.uniform(0.3, 3.0), 2)},
       answer="{value} {from_unit} is {result} {to_unit}."),
    _t(name="evaluate_expression", description="Evaluate an arithmetic expression.",
       params={"expression": S()}, required=["expression"], slots={"expression": EXPRESSIONS},
       queries=["What is {expression}?", "Compute {expression} for me.", "Calculate {expression}."],
       intent="evaluate {expression}"),
    _t(name="compute_statistics", description="Compute a summary statistic of a list of numbers.",
       params={"numbers": A("number"), "measure": E(MEASURES)},
       required=["numbers", "measure"], slots={"numbers": numbers, "measure": MEASURES},
       queries=["What is the {measure} of {numbers}?", "Give me the {measure} of these numbers: {numbers}."],
       intent="compute the {measure} of {numbers}"),
    _t(name="solve_quadratic", description="Solve a*x^2 + b*x + c = 0.",
       params={"a": N(), "b": N(), "c": N()},
       required=["a", "b", "c"], slots={"a": ints(1, 5), "b": ints(-9, 9), "c": ints(-9, 9)},
       queries=["Solve {a}x^2 + {b}x + {c} = 0.", "Find the roots of the quadratic with a={a}, b={b}, c={c}."],
       intent="solve a quadratic equation"),
    _t(name="is_prime", description="Check whether an integer is prime.",
       params={"n": I()}, required=["n"], slots={"n": ints(2, 9999)},
       queries=["Is {n} a prime number?", "Check if {n} is prime."], intent="check whether {n} is prime",
       result=lambda a, r: {"prime": all(a["n"] % d for d in range(2, int(a["n"] ** 0.5) + 1))},
       answer="Is {n} prime? The check says: {prime}."),
    _t(name="calculate_tip", description="Calculate a restaurant tip.",
       params={"bill": N(), "percent": I(), "split": I()},
       required=["bill", "percent"], slots={"bill": money(10, 400), "percent": [10, 12, 15, 18, 20, 25], "split": ints(2, 6)},
       queries=["What's a {percent}% tip on a {bill} dollar bill?", "Calculate a {percent} percent tip for a bill of {bill}."],
       optional={"split": ["We are splitting it between {split} people."]},
       intent="calculate a tip on a bill"),
    _t(name="calculate_loan_payment", description="Monthly payment of a fixed-rate loan.",
       params={"principal": N(), "annual_rate": N("Percent per year"), "years": I()},
       required=["principal", "annual_rate", "years"],
       slots={"principal": ints(5000, 500000), "annual_rate": [3.5, 4.2, 5.0, 6.1, 7.25], "years": [5, 10, 15, 20, 30]},
       queries=["What's the monthly payment on a {principal} loan at {annual_rate}% over {years} years?"],
       intent="compute a monthly loan payment"),
    _t(name="create_calendar_event", description="Create a calendar event.",
       params={"title": S(), "date": S("YYYY-MM-DD"), "time": S("HH:MM"),
               "duration_minutes": I(), "attendees": A("string")},
       required=["title", "date", "time"],
       slots={"title": TITLES, "date": date, "time": clock, "duration_minutes": [15, 30, 45, 60, 90], "attendees": emails},
       queries=["Schedule '{title}' on {date} at {time}.", "Add {title} to my calendar for {date} at {time}."],
       optional={"duration_minutes": ["It lasts {duration_minutes} minutes."], "attendees": ["Invite {attendees}."]},
       intent="create a calendar event",
       result=lambda a, r: {"event_id": f"evt-{r.randint(100, 999)}"},
       answer="Done: '{title}' is on your calendar for {date} at {time} (id {event_id})."),
    _t(name="list_calendar_events", description="List calendar events on a date.",
       params={"date": S("YYYY-MM-DD")}, required=["date"], slots={"date": date},
       queries=["What's on my calendar on {date}?", "Do I have any meetings on {date}?"],
       intent="list my calendar events on {date}"),
    _t(name="send_email", description="Send an email.",
       params={"to": S(), "subject": S(), "body": S()},
       required=["to", "subject", "body"],
       slots={"to": [f"{p}@example.com" for p in PEOPLE], "subject": SUBJECTS, "body": BODIES},
       queries=["Email {to} with the subject '{subject}' saying: {body}", "Send {to} an email titled '{subject}': {body}"],
       intent="send an email to {to}",
       result=lambda a, r: {"status": "sent"}, answer="Your email '{subject}' to {to} was {status}."),
    _t(name="get_stock_price", description="Get the latest price of a stock.",
       params={"ticker": S(), "exchange": E(["NASDAQ", "NYSE"])},
       required=["ticker"], slots={"ticker": TICKERS, "exchange": ["NASDAQ", "NYSE"]},
       queries=["What's {ticker} trading at?", "Get me the current stock price of {ticker}."],
       optional={"exchange": ["It is listed on the {exchange}."]}, intent="get the stock price of {ticker}",
       result=lambda a, r: {"price": round(r.uniform(20, 900), 2)}, answer="{ticker} is trading at ${price}."),
    _t(name="get_stock_history", description="Daily closing prices of a stock.",
       params={"ticker": S(), "days": I()},
       required=["ticker", "days"], slots={"ticker": TICKERS, "days": [5, 7, 14, 30, 90]},
       queries=["Show me {ticker}'s closing prices for the last {days} days."], intent="get the price history of {ticker}"),
    _t(name="translate_text", description="Translate text into another language.",
       params={"text": S(), "target_language": E(LANGUAGES), "source_language": S()},
       required=["text", "target_language"], slots={"text": PHRASES, "target_language": LANGUAGES, "source_language": ["English"]},
       queries=["Translate '{text}' into {target_language}.", "How do you say '{text}' in {target_language}?"],
       optional={"source_language": ["The text is in {source_language}."]},
       intent="translate '{text}' into {target_language}"),
    _t(name="detect_language", description="Detect the language of a text.",
       params={"text": S()}, required=["text"],
       slots={"text": ["bonjour tout le monde", "wie geht es dir", "muchas gracias", "arigatou gozaimasu"]},
       queries=["Which language is '{text}'?", "Detect the language of: {text}"], intent="detect the language of a text"),
    _t(name="search_recipes", description="Search recipes by ingredient.",
       params={"ingredient": S(), "cuisine": E(CUISINES),
               "max_minutes": I(), "vegetarian": B()},
       required=["ingredient"],
       slots={"ingredient": INGREDIENTS, "cuisine": CUISINES, "max_minutes": [15, 20, 30, 45, 60], "vegetarian": [True]},
       queries=["Find me a recipe with {ingredient}.", "What can I cook with {ingredient}?"],
       optional={"cuisine": ["Something {cuisine}."], "max_minutes": ["It must take under {max_minutes} minutes."],
                 "vegetarian": ["It has to be vegetarian."]},
       intent="find a recipe with {ingredient}",
       result=lambda a, r: {"recipe": r.choice(["stir-fry", "curry", "stew", "salad", "pasta bake"])},
       answer="Try a {ingredient} {recipe}."),
    _t(name="get_nutrition", description="Nutrition facts for a food.",
       params={"food": S(), "grams": I()}, required=["food", "grams"],
       slots={"food": FOODS, "grams": [50, 100, 150, 200, 250]},
       queries=["How many calories are in {grams} g of {food}?", "Nutrition facts for {grams} grams of {food}?"],
       intent="get nutrition facts for {food}"),
    _t(name="set_timer", description="Start a countdown timer.",
       params={"minutes": I(), "label": S()}, required=["minutes"],
       slots={"minutes": ints(1, 90), "label": ["pasta", "laundry", "tea", "workout"]},
       queries=["Set a timer for {minutes} minutes.", "Start a {minutes} minute timer."],
       optional={"label": ["Call it {label}."]}, intent="set a {minutes} minute timer"),
    _t(name="set_reminder", description="Create a reminder.",
       params={"text": S(), "date": S("YYYY-MM-DD"), "time": S("HH:MM")},
       required=["text", "date", "time"],
       slots={"text": ["call mom", "pay rent", "water the plants", "renew passport"], "date": date, "time": clock},
       queries=["Remind me to {text} on {date} at {time}."], intent="set a reminder to {text}"),
    _t(name="get_news", description="Get top news headlines on a topic.",
       params={"topic": E(TOPICS), "count": I()}, required=["topic"],
       slots={"topic": TOPICS, "count": [3, 5, 10]},
       queries=["What's the latest {topic} news?", "Show me {topic} headlines."],
       optional={"count": ["Just {count} of them."]}, intent="get {topic} news"),
    _t(name="get_local_time", description="Current local time in a city.",
       params={"city": S()}, required=["city"], slots={"city": CITIES},
       queries=["What time is it in {city}?", "Tell me the local time in {city}."], intent="tell the time in {city}",
       result=lambda a, r: {"time": f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}"},
       answer="It is {time} in {city} right now."),
    _t(name="get_distance", description="Distance between two cities.",
       params={"origin": S(), "destination": S(), "unit": E(["km", "miles"])},
       required=["origin", "destination"], slots={"origin": CITIES, "destination": CITIES, "unit": ["km", "miles"]},
       queries=["How far is {origin} from {destination}?", "What's the distance between {origin} and {destination}?"],
       optional={"unit": ["Answer in {unit}."]}, intent="get the distance from {origin} to {destination}"),
    _t(name="search_restaurants", description="Find restaurants in a city.",
       params={"city": S(), "cuisine": E(CUISINES), "price_level": I("1 (cheap) to 4 (expensive)")},
       required=["city", "cuisine"], slots={"city": CITIES, "cuisine": CUISINES, "price_level": ints(1, 4)},
       queries=["Find {cuisine} restaurants in {city}.", "Any good {cuisine} places to eat in {city}?"],
       optional={"price_level": ["Price level {price_level} out of 4."]}, intent="find {cuisine} restaurants in {city}"),
    _t(name="get_movie_showtimes", description="Showtimes of a movie in a city.",
       params={"movie": S(), "city": S()}, required=["movie", "city"],
       slots={"movie": MOVIES, "city": CITIES},
       queries=["When is {movie} playing in {city}?", "Showtimes for {movie} in {city}?"],
       intent="get showtimes for {movie} in {city}"),
    _t(name="play_music", description="Play music by an artist.",
       params={"artist": S(), "shuffle": B()}, required=["artist"],
       slots={"artist": ARTISTS, "shuffle": [True]},
       queries=["Play some {artist}.", "Put on music by {artist}."], optional={"shuffle": ["Shuffle it."]},
       intent="play music by {artist}"),
    _t(name="get_definition", description="Dictionary definition of an English word.",
       params={"word": S()}, required=["word"], slots={"word": WORDS},
       queries=["What does '{word}' mean?", "Define the word {word}."], intent="define the word '{word}'"),
    _t(name="calculate_bmi", description="Body mass index from weight and height.",
       params={"weight_kg": N(), "height_cm": N()}, required=["weight_kg", "height_cm"],
       slots={"weight_kg": ints(45, 120), "height_cm": ints(150, 200)},
       queries=["What's my BMI? I weigh {weight_kg} kg and I'm {height_cm} cm tall."], intent="calculate a BMI"),
]
TOOLS_BY_NAME: dict[str, ToolSpec] = {t.name: t for t in TOOLS}
