"""The demo tokenizer's training text: fixed facts, multilingual lines and templated sentences.

Deterministic for a seed, so the same seed trains the same tokenizer (``tokenizer.py``) and
calibrates the same sparse head (``builders.py``).
"""

from __future__ import annotations

import random

_FACTS = [
    "BGE M3 supports dense, sparse and multi-vector retrieval.",
    "A cross-encoder reranker scores a query and a passage together.",
    "The capital of France is Paris, and the capital of Japan is Tokyo.",
    "Water boils at 100 degrees Celsius at sea level.",
    "Photosynthesis converts light energy into chemical energy.",
    "The quick brown fox jumps over the lazy dog.",
    "Machine learning models learn patterns from data.",
    "Kubernetes schedules containers onto nodes in a cluster.",
    "KServe serves machine learning models over HTTP and gRPC.",
    "Please send the invoice to billing@example.com before Friday.",
    "Visit https://example.org/docs/v2/index.html for more information.",
    "Temperatures will reach 35°C (95°F) this afternoon.",
    "The meeting starts at 09:30 and ends at 11:15.",
    "Version 3.14.1 fixed a memory leak in the tokenizer.",
    "def encode(texts: list[str]) -> np.ndarray: return model(texts)",
    "SELECT id, title FROM documents WHERE score > 0.5 ORDER BY score DESC;",
    "{\"input\": [\"hello world\"], \"model\": \"bge-m3\"}",
    "Shakespeare wrote Hamlet, Macbeth and King Lear.",
    "The speed of light is about 299,792 kilometres per second.",
    "Mount Everest is 8,849 metres high.",
    "hello world",
    "Hello, World! How are you today?",
    "I can't believe it's already December... isn't it?",
    "Cost: $1,299.99 (incl. 19% VAT) — shipping is free!",
    "Open-source software powers most of the internet.",
    "The patient was given 5 mg of the drug twice daily.",
    "Transformers use self-attention to mix information between tokens.",
    "Rust, Go, Python and C++ are popular programming languages.",
    "The sun rises in the east and sets in the west.",
    "A journey of a thousand miles begins with a single step.",
]
_MULTILINGUAL = [
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Wie spät ist es? Ich möchte einen Kaffee trinken.",
    "Le modèle de recherche renvoie les documents les plus pertinents.",
    "Où se trouve la gare la plus proche, s'il vous plaît ?",
    "El perro corre rápidamente por el parque en la mañana.",
    "¿Cuál es la capital de España? Madrid, por supuesto.",
    "Il gatto dorme sul divano tutto il pomeriggio.",
    "O aprendizado de máquina está mudando o mundo.",
    "De trein vertrekt om acht uur vanaf het centraal station.",
    "Zażółć gęślą jaźń, powiedział nauczyciel.",
    "Bugün hava çok güzel, parka gidelim mi?",
    "Tôi thích học tiếng Việt và đọc sách mỗi ngày.",
    "Быстрая коричневая лиса прыгает через ленивую собаку.",
    "Москва — столица России, а Киев — столица Украины.",
    "Η γρήγορη καφέ αλεπού πηδά πάνω από τον τεμπέλη σκύλο.",
    "الثعلب البني السريع يقفز فوق الكلب الكسول.",
    "مرحبا بالعالم، كيف حالك اليوم؟",
    "השועל החום המהיר קופץ מעל הכלב העצלן.",
    "तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है।",
    "नमस्ते दुनिया, आप कैसे हैं?",
    "敏捷的棕色狐狸跳过了懒狗。",
    "北京是中国的首都，上海是最大的城市。",
    "机器学习模型从数据中学习规律。",
    "素早い茶色の狐が怠惰な犬を飛び越える。",
    "東京は日本の首都です。今日はいい天気ですね。",
    "ひらがなとカタカナと漢字を使います。",
    "빠른 갈색 여우가 게으른 개를 뛰어넘는다.",
    "서울은 대한민국의 수도입니다.",
    "สุนัขจิ้งจอกสีน้ำตาลกระโดดข้ามสุนัขขี้เกียจ",
    "Ο καιρός σήμερα είναι ηλιόλουστος.",
    "Emoji test: 😀 🚀 ❤️ 👍 🎉 and symbols © ® ™ € £ ¥ ∑ √ ∞ ≤ ≥ → ←",
    "Accents: àáâãäå çèéêë ìíîï ñòóôõö ùúûü ýÿ ÀÉÎÕÜ ß æ ø å",
]


_NOUNS = """
    account address agreement airport animal answer apple application argument army article
    artist baby bank battery beach bicycle bird birthday board boat body book border bottle
    bridge brother budget building business camera campaign candidate capital car card career
    castle cat ceiling century chair champion chapter chicken child church citizen city class
    climate clock cloud coast coffee collection college company computer concert condition
    contract country course court customer dance daughter decision degree department desert
    design dinner director disease doctor document dog door dream driver economy editor
    election energy engine engineer evening event evidence experience experiment factory family
    farmer feature festival field film finger fire flight floor flower forest friend garden
    government grandmother group guitar hospital hotel house husband idea industry island
    journey judge kitchen knowledge language lawyer leader letter library light machine manager
    market meeting memory message method minute model moment money month morning mountain movie
    museum music nation network newspaper night novel number ocean office officer opinion
    orchestra painting paper parent party passage patient pattern picture planet player poem
    police policy population president price problem product professor program project
    question queue railway reason recipe region report research restaurant result river road
    school science scientist season secret server shop signal singer sister software soldier
    song station story street student summer system table teacher team technology telephone
    theory ticket town train tree university valley vector village voice volume weather window
    winter woman word worker writer year
"""
_ADJECTIVES = """
    ancient angry beautiful bright broken busy careful cheap clean clever cold comfortable
    complex curious dangerous dark deep dense different difficult dirty distant early easy
    electric empty enormous expensive famous fast foreign fresh friendly funny gentle global
    golden green happy heavy hidden honest huge important interesting large late lazy little
    local long loud lucky modern multilingual narrow natural nervous new noisy normal obvious
    old orange patient perfect polite popular powerful private public purple quick quiet rapid
    rare real red rich sad safe scientific secret serious sharp short silent simple slow small
    smart soft sparse special strange strong sudden sweet tall terrible thin tiny tired
    traditional typical ugly unusual useful vast warm wet white wild wise wonderful young
"""
_VERBS = """
    accept admire allow answer arrive ask avoid bake believe borrow build buy calculate call
    carry catch celebrate change choose clean climb close collect compare compress connect
    consider cook count cover create cross deliver describe design destroy discover discuss
    download draw drink drive eat encode enjoy evaluate examine explain explore fetch find
    finish fix follow forget gather generate help hold ignore imagine improve include index
    install invite join jump keep kick know learn leave lift listen load measure mention move
    notice observe open order organize paint pay perform plan play predict prepare present
    print protect publish pull push rank read receive recommend remember repair replace report
    request rescue retrieve return save search sell send share show sing sleep solve sort
    speak store study suggest summarize support teach test think tokenize train translate
    travel trust understand update upload use visit wait walk want wash watch win wonder work
    write
"""
_ADVERBS = """
    quickly slowly carefully quietly loudly happily sadly easily rarely often always never
    sometimes usually suddenly finally recently gently badly completely nearly almost eagerly
    honestly simply openly silently smoothly
"""
_PLACES = """
    Amsterdam Athens Bangkok Barcelona Beijing Berlin Boston Brussels Cairo Chicago Delhi
    Dublin Istanbul Jakarta Lagos Lisbon London Madrid Melbourne Mexico Milan Montreal Moscow
    Mumbai Nairobi Oslo Paris Prague Rome Seoul Singapore Stockholm Sydney Tokyo Toronto
    Vienna Warsaw Zurich
"""
_NAMES = """
    Alice Bob Carlos Dmitri Elena Fatima George Hiro Ines James Kofi Lena Maria Nadia Omar
    Priya Quentin Rosa Sven Tariq Ursula Viktor Wei Xavier Yuki Zara
"""
_FOREIGN = """
    Haus Stadt Wasser Zeit Arbeit Freund Schule Sprache Straße Bahnhof Frühstück Mädchen
    Entwicklung Geschwindigkeit Wissenschaft maison ville eau temps travail ami école langue
    rue gare petit-déjeuner fille développement vitesse science casa ciudad agua tiempo
    trabajo amigo escuela idioma calle estación desayuno niña desarrollo velocidad ciencia
    città acqua tempo lavoro amico scuola lingua strada stazione água trabalho escola cidade
    дом город вода время работа друг школа язык улица вокзал наука скорость
    家 城市 水 时间 工作 朋友 学校 语言 街道 车站 科学 速度 東京 時間 仕事 友達 学校 言葉
    집 도시 물 시간 일 친구 학교 언어 거리 역 과학 속도 घर शहर पानी समय काम दोस्त
    σπίτι πόλη νερό χρόνος δουλειά φίλος σχολείο بيت مدينة ماء وقت عمل صديق مدرسة
"""


def corpus(seed: int) -> list[str]:
    """Deterministic mixed corpus: templated English plus multilingual/unicode lines.

    Why: a locally trained tokenizer needs text; templates over a few hundred words give
    enough distinct subwords for the default 2000-piece vocab, and the non-English words and
    lines put their scripts into the alphabet so that multilingual input tokenises into real
    pieces instead of ``<unk>``.
    """
    rng = random.Random(seed)
    nouns, adjs, verbs = _NOUNS.split(), _ADJECTIVES.split(), _VERBS.split()
    advs, places, names, foreign = (
        _ADVERBS.split(), _PLACES.split(), _NAMES.split(), _FOREIGN.split()
    )

    def inflect(verb: str) -> str:
        form = rng.choice(("", "s", "ed", "ing", "s"))
        if form in ("ed", "ing") and verb.endswith("e"):
            verb = verb[:-1]
        return verb + form

    lines = list(_FACTS) + list(_MULTILINGUAL) * 2
    for _ in range(1500):
        n1, n2, n3 = rng.choice(nouns), rng.choice(nouns), rng.choice(nouns)
        a1, a2, v, adv = rng.choice(adjs), rng.choice(adjs), rng.choice(verbs), rng.choice(advs)
        who, where = rng.choice(names), rng.choice(places)
        form = rng.randrange(7)
        if form == 0:
            lines.append(f"The {a1} {n1} {inflect(v)} the {a2} {n2} in {where} {adv}.")
        elif form == 1:
            lines.append(f"{who} {inflect(v)} {rng.randrange(2, 500)} {n1}s near the {n2}.")
        elif form == 2:
            lines.append(f"Why does the {n1} {v} a {a1} {n2}?")
        elif form == 3:
            lines.append(f"{adv.capitalize()}, {who} and the {a1} {n3} {inflect(v)} {n2}s.")
        elif form == 4:
            n, m, d = rng.randrange(1, 100000), rng.randrange(1, 13), rng.randrange(1, 29)
            lines.append(f"Ticket #{n}: {n1} {inflect(v)} on 2024-{m:02d}-{d:02d} ({a1}).")
        elif form == 5:
            lines.append(" ".join(rng.sample(foreign, 6)) + rng.choice((".", "?", "!", "")))
        else:
            lines.append(f"{rng.choice(_FACTS)} {who} {inflect(v)} it {adv}.")
    rng.shuffle(lines)
    return lines
