"""Words that mean the same niche concept, in English, Spanish and Portuguese.

Each concept is named by the word creators most often use for it; its synonyms, informal
forms and translations are read as that word, in bios and briefs alike. Only words a brand
would accept as the same thing belong here: "obedience" is not "training", "gym" is not
"fitness". Inflections need no entry (the stemmer joins them); accents are folded before
lookup, so "panadería" and "panaderia" are one entry. The stemmer is English: a Spanish or
Portuguese plural it does not join ("cães") is listed beside its singular.
"""

from __future__ import annotations

from typing import Final

CONCEPTS: Final[dict[str, tuple[str, ...]]] = {
    # pets
    "dog": ("doggie", "doggy", "doggo", "pooch", "canine", "hound", "perro", "cachorro", "cão",
            "cães", "cachorra"),
    "puppy": ("pup", "perrito", "filhote"),
    "cat": ("kitty", "gato", "gata", "feline"),
    "kitten": ("gatito", "gatinho"),
    "pets": ("mascota", "mascotas", "pet", "animal de estimação"),
    "vet": ("veterinarian", "veterinario", "veterinário"),
    "adoption": ("adopt", "adopción", "adoção"),
    "rescue": ("rescate", "resgate"),
    "grooming": ("groomer", "peluquería canina", "tosa"),
    # baking
    "baking": ("bakery", "baker", "panadería", "panadero", "padaria", "repostería", "hornear"),
    "bread": ("pão", "pães", "loaf"),
    "flour": ("harina", "farinha"),
    "cake": ("pastel", "bolo", "torta", "tarta"),
    "dough": ("masa", "massa"),
    "yeast": ("levadura", "fermento"),
    "oven": ("horno", "forno"),
    "pastry": ("pastelería", "confeitaria", "pâtisserie"),
    "kitchen": ("cocina", "cozinha"),
    "recipes": ("recipe", "receta", "receita"),
    "homemade": ("casero", "casera", "caseiro", "caseira", "hecho en casa", "diy"),
    # fitness and nutrition
    "training": ("adiestramiento", "adestramento", "entrenamiento", "treinamento"),
    "workout": ("exercise", "ejercicio", "exercício", "entreno", "treino"),
    "gym": ("gimnasio", "academia"),
    "strength": ("fuerza", "força"),
    "muscle": ("músculo", "musculación", "musculação"),
    "lifting": ("weightlifting", "powerlifting", "pesas"),
    "coach": ("trainer", "entrenador", "treinador"),
    "healthy": ("saludable", "saudável", "sano", "wellness"),
    "nutrition": ("nutrición", "nutrição", "nutritional"),
    "dietitian": ("nutritionist", "nutricionista", "dietista"),
    "diet": ("dieta",),
    "salad": ("ensalada", "salada"),
    "vegan": ("vegano", "vegana"),
    "protein": ("proteína",),
    "smoothie": ("batido", "licuado"),
    "mealprep": ("meal prep",),
    # gaming
    "gaming": ("games", "videogames", "videojuegos", "videojogos", "juegos", "jogos"),
    "gamer": ("jugador", "jogador"),
    "stream": ("streamer", "livestream"),
    "console": ("consola",),
    # travel
    "travel": ("traveller", "trip", "vacation", "holiday", "viaje", "viajes", "viajar",
               "viagem", "viagens", "vacaciones", "férias"),
    "backpacking": ("backpacker", "mochilero", "mochileiro", "mochila"),
    "beaches": ("beach", "playa", "praia"),
    "flights": ("flight", "vuelo", "vuelos", "voo", "voos"),
    "adventure": ("aventura",),
    "hiking": ("hike", "trek", "trekking", "senderismo", "trilha", "trilhas"),
    "passport": ("pasaporte", "passaporte"),
    "cities": ("city", "ciudad", "ciudades", "cidade", "cidades"),
    # beauty and fashion
    "beauty": ("belleza", "beleza"),
    "makeup": ("maquillaje", "maquiagem", "maquilhagem"),
    "skincare": ("skin care", "cuidado de la piel", "cuidados com a pele"),
    "lipstick": ("labial", "batom", "pintalabios"),
    "cosmetics": ("cosméticos",),
    "nails": ("uñas", "unhas", "manicure"),
    "haircare": ("hair", "cabello", "cabelo"),
    "fashion": ("moda",),
    "style": ("estilo",),
    "outfit": ("atuendo", "conjunto"),
    "sneakers": ("zapatillas", "tênis", "kicks"),
    "wardrobe": ("clothes", "clothing", "ropa", "roupa", "roupas"),
    "thrift": ("secondhand", "brechó", "segunda mano"),
    # tech
    "tech": ("technology", "tecnología", "tecnologia"),
    "gadgets": ("gadget", "dispositivos"),
    "smartphone": ("phone", "cellphone", "celular", "móvil", "telemóvel"),
    "laptop": ("notebook", "portátil", "computer", "computadora", "computador"),
    "review": ("reseña", "análise", "análisis"),
    "coding": ("programming", "programmer", "code", "programación", "programação"),
    "headphones": ("earbuds", "headset", "auriculares", "fones"),
    "apps": ("app", "aplicaciones", "aplicativos"),
    # parenting
    "parenting": ("crianza", "maternidad", "paternidad", "maternidade", "paternidade"),
    "mom": ("mum", "mommy", "mummy", "mother", "mamá", "mamãe", "mãe", "madre"),
    "dad": ("daddy", "father", "papá", "papai", "pai", "padre"),
    "baby": ("bebé", "bebê"),
    "kids": ("children", "child", "niños", "niñas", "crianças", "filhos", "hijos"),
    "family": ("familia", "família"),
    "newborn": ("infant", "recién nacido", "recém-nascido"),
    "school": ("escuela", "escola", "colegio"),
    # finance
    "finance": ("finances", "finanzas", "finanças", "financial", "financiero", "financeiro"),
    "investing": ("investment", "investor", "invest", "inversión", "inversiones",
                  "investimento", "investimentos"),
    "stocks": ("equities", "acciones", "ações"),
    "budget": ("presupuesto", "orçamento"),
    "savings": ("ahorro", "ahorros", "poupança", "economizar"),
    "crypto": ("cryptocurrency", "bitcoin", "criptomonedas", "criptomoedas"),
    "money": ("dinero", "dinheiro", "cash"),
    "retirement": ("jubilación", "aposentadoria", "pension"),
    "dividends": ("dividendos",),
    "debt": ("deuda", "deudas", "dívida", "dívidas"),
    "wealth": ("riqueza",),
    # gardening
    "gardening": ("gardener", "jardinería", "jardinagem", "jardinero", "jardineiro"),
    "garden": ("jardín", "jardim", "huerto", "horta"),
    "plants": ("plant", "plantas"),
    "seeds": ("seed", "semillas", "sementes"),
    "compost": ("composting", "compostaje", "compostagem"),
    "vegetables": ("veggies", "verduras", "hortalizas", "legumes", "hortaliças"),
    "harvest": ("cosecha", "colheita"),
    "succulents": ("suculentas",),
    "organic": ("orgánico", "orgânico"),
    "greenhouse": ("invernadero", "estufa"),
}  # fmt: skip

STOP_WORDS_ES_PT: Final = frozenset({
    "a", "al", "ao", "aos", "as", "con", "com", "como", "da", "das", "de", "del", "dela", "do",
    "dos", "e", "é", "el", "em", "en", "es", "esta", "está", "este", "la", "las", "lo", "los",
    "mais", "mas", "más", "meu", "mi", "mis", "minha", "muy", "muito", "na", "nas", "no", "nos",
    "o", "os", "para", "pelo", "pela", "por", "que", "se", "su", "sus", "também", "tu", "te",
    "um", "uma", "un", "una", "unos", "unas", "y",
})  # fmt: skip
"""Spanish and Portuguese function words: like English stop words, they carry no niche."""
